"""``python -m geotl``: the same as the ``geotl`` command."""

from geotl.cli.main import main

main()
