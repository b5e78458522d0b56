import sys

from dynamod_hostnamed.main import main

sys.exit(main())
