"""The roof: one thin module per `traitrl` command, wiring the libraries below (nothing below imports it)."""
