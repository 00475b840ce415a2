"""Entry point: ``python main.py --help``."""

if __name__ == "__main__":
    try:
        from app.cli import main
    except KeyboardInterrupt:  # Ctrl-C while torch is still importing: nothing to flush yet
        raise SystemExit(130) from None
    raise SystemExit(main())
