"""clrec: recommendations from pretrained-encoder content fused with behaviour logs."""

__version__ = "0.1.0"
