"""Context assembly: turning ranked candidates into a text within the token budget."""
