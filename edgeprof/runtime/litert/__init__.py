"""LiteRT (ai-edge-litert): the interpreter runner with XNNPACK, its op list and delegate partitions, litert-torch."""
