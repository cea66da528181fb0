export CASCADE_DATA_SOURCE=synthetic CASCADE_N_USERS=100000 CASCADE_N_ITEMS=5000 CASCADE_N_INTERACTIONS=600000
export CASCADE_EPOCHS=1 CASCADE_DISTILL_EPOCHS=1 CASCADE_RETRIEVAL_EPOCHS=2 CASCADE_LOOKALIKE_EPOCHS=3 CASCADE_LOOKALIKE_VALID_TASKS=100
export CASCADE_DISTILL_LIST_ROWS=0  # no listwise phase: its hard lists over 100k users take most of an hour, and a latency set-up needs the graphs, not their quality
export CASCADE_ARTIFACTS_DIR=/tmp/la/big/artifacts CASCADE_MODEL_REPOSITORY=/tmp/la/big/model_repository CASCADE_ENSEMBLE_REPOSITORY=/tmp/la/big/ensemble CASCADE_RUN_DIR=/tmp/la/big/run
