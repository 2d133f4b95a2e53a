"""Sentence embeddings: encoders and pooling (model), training rows (data), test collections,
retrieval metrics and baselines (retrieval), the document index (index), RAG (rag) and the
embeddings endpoint's worker (serving). See docs/embed.md."""
