from homeiq_daemon.cli import main

raise SystemExit(main())
