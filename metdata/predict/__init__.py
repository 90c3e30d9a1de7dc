"""Stage 5, using a run: prediction (predict, serve) and evaluation."""
