"""Dead letters: inspect and redrive (contract section 11)."""
