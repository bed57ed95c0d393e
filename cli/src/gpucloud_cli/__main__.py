from gpucloud_cli.main import main

main()
