"""What works on a built model: feature pyramids, optimized inference, export."""
