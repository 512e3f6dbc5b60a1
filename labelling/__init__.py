"""Label Studio integration: the pairwise-ranking campaign from pairs to annotations.

- ``server``    Label Studio's lifecycle (own venv, the annotators' gate process); re-exports what callers use of
                ``settings`` (``SR4K_LABEL_*``, errors, URLs), ``accounts`` (preset admin + token, data in
                ``<workspace>/labelstudio``, the served folder) and ``api`` (a client with bounded retries, users);
- ``gate``      the annotators' reverse proxy in front of Label Studio;
- ``interface`` the labeling config (LR reference + two candidates as matched crops, two questions with hotkeys);
- ``gold``      gold pairs with known answers;
- ``push``      pairs -> tasks, idempotent and crash-safe: ``selection`` (``--pairs``), ``project`` (the project,
                its task listing), ``ledger`` (pair -> task mapping, reconciled with the server), ``taskdata``
                (what a task shows, ``compare``'s pages);
- ``pull``      annotations -> ``tables/annotations``, incremental and validated, mapped to candidates;
- ``qc`` / ``aggregate``  annotator QC, agreement, per-pair labels and model rankings.

CLI: ``sr4k label serve|stop|add-annotator|push|pull|status|deploy`` (flows/label_cli.py); flows: flows/label.py.
"""
