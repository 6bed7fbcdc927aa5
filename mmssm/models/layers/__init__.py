"""Plain nn.Modules shared by the families (no registry, no configs)."""
