"""The models: specs (plain data), blocks and the graph, the one build function, argument rules, the registry."""
