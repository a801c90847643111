"""A small least-recently-used cache."""


class LRUCache:
    """Keeps at most `capacity` entries. When it is full, putting a new key
    evicts the least recently used entry. Both get() of a present key and
    put() count as a use."""

    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._data = {}
        self._order = []  # keys, least recently used first

    def get(self, key, default=None):
        if key not in self._data:
            return default
        return self._data[key]

    def put(self, key, value):
        if len(self._data) >= self.capacity:
            oldest = self._order.pop(0)
            del self._data[oldest]
        self._data[key] = value
        self._order.append(key)

    def keys(self):
        """The keys, least recently used first."""
        return list(self._order)

    def __len__(self):
        return len(self._data)
