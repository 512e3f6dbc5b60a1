"""Label Studio integration: the pairwise-ranking campaign from pairs to annotations.

- ``server``    Label Studio's lifecycle (own venv, preset admin + token, data in ``<workspace>/labelstudio``),
                settings, and an API client with bounded retries;
- ``interface`` the labeling config (LR reference + two candidates as matched crops, two questions with hotkeys);
- ``gold``      gold pairs with known answers;
- ``push``      pairs -> tasks, idempotent and crash-safe (reconciled with the server);
- ``pull``      annotations -> ``tables/annotations``, incremental and validated, mapped to candidates;
- ``qc`` / ``aggregate``  annotator QC, agreement, per-pair labels and model rankings.

CLI: ``sr4k label serve|stop|add-annotator|push|pull|status|deploy`` (flows/label_cli.py); flows: flows/label.py.
"""
