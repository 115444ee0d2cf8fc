"""``python -m app [streamlit options]``: start the dashboard with the engine warmed up (``app.warmup``).

The same as ``streamlit run app/main.py [options]``, but the engine is imported and the default checkpoint
loaded before the server listens, so the first page and the first Run do not wait for them. Options such as
``--server.port 8502`` go to Streamlit.
"""

from __future__ import annotations

import sys

from core.settings import REPO_ROOT


def main(argv: list[str]) -> int:
    from app.warmup import warm_up

    print("Warming up the dashboard (engine, run store, default checkpoint)…", flush=True)
    print(warm_up().summary(), flush=True)

    from streamlit.web import cli as streamlit_cli

    # Viewer toolbar (no "Deploy" button) from any working directory; .streamlit/config.toml says the same for
    # `streamlit run` started in the repository. Options given on the command line come later and win.
    sys.argv = ["streamlit", "run", str(REPO_ROOT / "app" / "main.py"), "--client.toolbarMode", "viewer", *argv]
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
