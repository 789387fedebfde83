from autobatch_cli.main import app

app(prog_name="autobatch")
