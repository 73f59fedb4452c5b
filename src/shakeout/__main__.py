from shakeout.cli import main

raise SystemExit(main())
