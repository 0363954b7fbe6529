import sys

from llmclf.cli import main

sys.exit(main())
