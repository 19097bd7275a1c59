from vj.cli import run

run()
