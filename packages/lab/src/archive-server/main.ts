// filled by the archive server work
