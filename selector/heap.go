package selector

// expiryHeap is a min-heap of elements by deadline that knows each
// element's index, so refreshing a registration is one O(log n) fix
// instead of a lazy duplicate entry.
type expiryHeap []*pe

func (h *expiryHeap) push(e *pe) {
	e.heapIdx = len(*h)
	*h = append(*h, e)
	h.up(e.heapIdx)
}

func (h *expiryHeap) remove(e *pe) {
	i := e.heapIdx
	if i < 0 {
		return
	}
	s := *h
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].heapIdx = i
	}
	s[last] = nil
	*h = s[:last]
	e.heapIdx = -1
	if i != last {
		h.fix(i)
	}
}

func (h expiryHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].deadline <= h[i].deadline {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h expiryHeap) down(i0 int) bool {
	i := i0
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h[r].deadline < h[l].deadline {
			j = r
		}
		if h[i].deadline <= h[j].deadline {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
