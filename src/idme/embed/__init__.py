"""Speaker encoders behind one Embedder protocol."""
