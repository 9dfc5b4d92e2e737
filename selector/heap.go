package selector

// expiryHeap is a 4-ary min-heap of elements by deadline that knows each
// element's index, so refreshing a registration is one O(log n) fix
// instead of a lazy duplicate entry. Deadlines are stored inline so the
// sift loops compare contiguous memory rather than chasing pointers, and
// four children per node halve the depth, hence the number of elements
// whose index must be rewritten (one cache miss each) per refresh.
type expiryHeap []heapItem

type heapItem struct {
	deadline int64
	e        *pe
}

func (h *expiryHeap) push(e *pe) {
	e.heapIdx = len(*h)
	*h = append(*h, heapItem{e.deadline, e})
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
		s[i].e.heapIdx = i
	}
	s[last] = heapItem{}
	*h = s[:last]
	e.heapIdx = -1
	if i != last {
		h.fix(i)
	}
}

// update moves e, already in the heap, to its new deadline.
func (h expiryHeap) update(e *pe) {
	h[e.heapIdx].deadline = e.deadline
	h.fix(e.heapIdx)
}

func (h expiryHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h expiryHeap) up(i int) {
	it := h[i]
	for i > 0 {
		parent := (i - 1) / arity
		if h[parent].deadline <= it.deadline {
			break
		}
		h[i] = h[parent]
		h[i].e.heapIdx = i
		i = parent
	}
	h[i] = it
	it.e.heapIdx = i
}

func (h expiryHeap) down(i0 int) bool {
	i := i0
	n := len(h)
	it := h[i]
	for {
		first := arity*i + 1
		if first >= n {
			break
		}
		j := first
		for c := first + 1; c < min(first+arity, n); c++ {
			if h[c].deadline < h[j].deadline {
				j = c
			}
		}
		if it.deadline <= h[j].deadline {
			break
		}
		h[i] = h[j]
		h[i].e.heapIdx = i
		i = j
	}
	h[i] = it
	it.e.heapIdx = i
	return i > i0
}

const arity = 4
