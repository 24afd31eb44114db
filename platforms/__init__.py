"""Machine descriptions: memory maps, devices, device trees."""
