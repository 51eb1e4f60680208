from videogen_server.main import main

main()
