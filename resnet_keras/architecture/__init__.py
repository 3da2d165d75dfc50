"""The models: specs (plain data), blocks, the one build function, argument rules, the registry."""
