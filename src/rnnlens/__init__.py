"""rnnlens: train and understand character-level recurrent language models."""

__version__ = "0.1.0"
