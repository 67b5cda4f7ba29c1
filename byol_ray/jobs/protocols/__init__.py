"""The paper's evaluation protocols on a trained encoder, each a Ray Train job of its own."""
