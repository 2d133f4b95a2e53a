"""lmlab studio: a local web app over run folders (runs, live curves, compare, launch, chat,
arena, deploy). ``lmlab studio`` starts it; ``lmlab.studio.app.create_app`` builds it."""
