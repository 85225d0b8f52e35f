"""Running builds: the CPU engine, the latent loop and its evaluation, the headless browser driver, serve."""
