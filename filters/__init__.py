"""Document filters: one module per family, registered by name (see ``filters.registry``)."""
