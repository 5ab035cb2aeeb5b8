"""Usage lines as the README writes the commands (a user copies them from ``--help``)."""

from __future__ import annotations

from click.testing import CliRunner

from geotl.cli.main import cli


def test_monitor_region_help_shows_the_plain_form_not_the_hidden_run() -> None:
    # `geotl monitor REGION.toml --help` lists the run's options; its usage must be the
    # form the README and `geotl monitor --help` teach, not the internal `monitor run`
    result = CliRunner().invoke(cli, ["monitor", "region.toml", "--help"], prog_name="geotl")
    assert result.exit_code == 0
    usage = result.output.splitlines()[0]
    assert usage == "Usage: geotl monitor REGION.toml --out DIR [OPTIONS]"
    assert "``" not in result.output
    assert "--retry-failed" in result.output


def test_run_names_its_argument_as_the_other_commands_do() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"], prog_name="geotl")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "Usage: geotl run [OPTIONS] REGION.toml"


def test_a_mistyped_monitor_option_points_to_the_help_a_user_can_type() -> None:
    result = CliRunner().invoke(cli, ["monitor", "region.toml", "--bogus"], prog_name="geotl")
    assert result.exit_code == 2
    assert result.output.strip().endswith("(geotl monitor REGION.toml --help says more)")
