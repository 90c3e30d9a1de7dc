"""Stage 2, images: which objects to take (selection) and each chunk's download, decode and write."""
