"""Records and the board: result records (typed, versioned, migrated), verify, the leaderboard, the site and compare."""
