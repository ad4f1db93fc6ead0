"""`compact run`: the whole path from a teacher to exported, benchmarked students, in resumable stages."""
