"""``ml_collections`` configs: each file has ``get_config()``; pass with ``--config=``."""
