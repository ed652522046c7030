"""Asset-side engines of aml-local (environments today): self-contained modules the nouns call."""
