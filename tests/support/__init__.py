"""Test infrastructure shared by the tests and the bench scripts: simulated hosts and real servers."""
