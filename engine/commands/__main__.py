from engine.commands.main import main

main()
