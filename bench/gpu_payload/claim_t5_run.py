# The console script `claim_t5_run` (setup.py entry point), for a machine where the package is not pip-installed.
from claim_t5.pipeline import main
if __name__ == "__main__": main()
