"""Real robot hardware: motor buses (`motors`); cameras and robots build on them."""
