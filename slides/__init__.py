"""Instructor slides built from the executed notebooks (run: python -m slides.build)."""
