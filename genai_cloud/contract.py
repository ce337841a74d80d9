"""The neutral in-container contract, shared with the entrypoint.

The implementation lives in ``job_templates/contract.py`` because it ships inside the bundle and
must run in a container where genai-cloud itself is not installed.
"""

from job_templates.contract import (  # noqa: F401
    DATA_CHANNELS,
    ENV_CHANNEL_PREFIX,
    ENV_CHECKPOINT_DIR,
    ENV_MODEL_DIR,
    ENV_OUTPUT_DIR,
    ENV_PLATFORM,
    ENV_SPEC,
    FILE_CHANNELS,
    INPUT_CHANNELS,
    MODEL_CHANNELS,
    PLATFORMS,
    Contract,
    detect_platform,
    gcs_to_fuse,
    resolve,
)
