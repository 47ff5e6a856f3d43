"""Search: embeddings, the vector index, and (to come) the hybrid pipeline."""
