from shakeout.entry import main

raise SystemExit(main())
