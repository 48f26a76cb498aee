"""ExecuTorch (XNNPACK): torch.export + the XNNPACK partitioner to a .pte, portable_lib runner, ETDump per-op."""
