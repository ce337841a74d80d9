"""Serverless launchers: a job starts when a spec lands in a bucket or an HTTP call carries one.

``core`` holds everything the three clouds share (settings from the environment, spec parsing,
validate -> plan -> idempotent submit, HTTP answers, JSON logs); ``aws_lambda``,
``gcp_function`` and ``azure_function`` only translate their platform's event shapes. None of
them imports torch, transformers or a cloud SDK at module load.
"""
