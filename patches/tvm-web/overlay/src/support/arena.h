/*
 * mlcbuild's own implementation of src/support/arena.h, an interface that the
 * sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * A bump-pointer arena for short-lived, trivially destructible data.
 * Memory comes in pages from a PageAllocator with this interface:
 *   ArenaPageHeader* allocate(size_t min_size);  // page of >= min_size bytes,
 *                                               // header's size/offset filled in
 *   void deallocate(ArenaPageHeader* page);
 *   static constexpr int kPageSize, kPageAlign;   // default page size / alignment
 * RecycleAll() makes every page reusable without returning it; FreeAll()
 * returns all pages to the allocator.
 */
#ifndef TVM_SUPPORT_ARENA_H_
#define TVM_SUPPORT_ARENA_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>
#include <utility>

namespace tvm {
namespace support {

/*! \brief Bookkeeping stored at the start of every arena page. */
struct ArenaPageHeader {
  /*! \brief Next page in the arena's list (owned by the arena). */
  ArenaPageHeader* next;
  /*! \brief Total page size in bytes, header included. */
  size_t size;
  /*! \brief Offset of the first unused byte, measured from the page start. */
  size_t offset;
};

/*! \brief Page allocator backed by malloc/free. */
class SimplePageAllocator {
 public:
  static constexpr int kPageSize = 16 << 10;
  static constexpr int kPageAlign = alignof(std::max_align_t);

  ArenaPageHeader* allocate(size_t min_size) {
    size_t size = min_size > size_t(kPageSize) ? min_size : size_t(kPageSize);
    void* mem = std::malloc(size);
    if (mem == nullptr) throw std::bad_alloc();
    ArenaPageHeader* page = static_cast<ArenaPageHeader*>(mem);
    page->size = size;
    page->offset = sizeof(ArenaPageHeader);
    return page;
  }

  void deallocate(ArenaPageHeader* page) { std::free(page); }
};

template <typename PageAllocator>
class GenericArena {
 public:
  explicit GenericArena(PageAllocator alloc = PageAllocator()) : alloc_(std::move(alloc)) {}
  GenericArena(const GenericArena&) = delete;
  GenericArena& operator=(const GenericArena&) = delete;
  ~GenericArena() { FreeAll(); }

  /*! \brief Allocate `size` bytes aligned to `align` (a power of two). */
  void* Alloc(size_t size, size_t align = PageAllocator::kPageAlign) {
    if (used_ == nullptr || !Fits(used_, size, align)) {
      // Reuse a recycled page that fits, else get a fresh one.
      ArenaPageHeader** link = &free_;
      while (*link != nullptr && !Fits(*link, size, align)) link = &(*link)->next;
      ArenaPageHeader* page = *link;
      if (page != nullptr) {
        *link = page->next;
      } else {
        page = alloc_.allocate(sizeof(ArenaPageHeader) + size + align);
      }
      page->next = used_;
      used_ = page;
    }
    uintptr_t start = AlignedStart(used_, align);
    used_->offset = start - reinterpret_cast<uintptr_t>(used_) + size;
    return reinterpret_cast<void*>(start);
  }

  /*! \brief Uninitialized storage for `count` objects of trivial type T. */
  template <typename T>
  T* allocate_(int count = 1) {
    static_assert(std::is_trivially_destructible<T>::value, "arena never runs destructors");
    return static_cast<T*>(Alloc(sizeof(T) * static_cast<size_t>(count), alignof(T)));
  }

  /*! \brief Construct one T in the arena; T must be trivially destructible. */
  template <typename T, typename... Args>
  T* make(Args&&... args) {
    return new (allocate_<T>(1)) T(std::forward<Args>(args)...);
  }

  /*! \brief Forget all allocations but keep the pages for reuse. */
  void RecycleAll() {
    while (used_ != nullptr) {
      ArenaPageHeader* page = used_;
      used_ = page->next;
      page->offset = sizeof(ArenaPageHeader);
      page->next = free_;
      free_ = page;
    }
  }

  /*! \brief Return every page to the allocator. */
  void FreeAll() {
    RecycleAll();
    while (free_ != nullptr) {
      ArenaPageHeader* page = free_;
      free_ = page->next;
      alloc_.deallocate(page);
    }
  }

 private:
  // Address of the first free byte of `page` rounded up to `align`.
  static uintptr_t AlignedStart(const ArenaPageHeader* page, size_t align) {
    uintptr_t unused = reinterpret_cast<uintptr_t>(page) + page->offset;
    return (unused + align - 1) & ~(uintptr_t(align) - 1);
  }

  static bool Fits(const ArenaPageHeader* page, size_t size, size_t align) {
    uintptr_t end = reinterpret_cast<uintptr_t>(page) + page->size;
    uintptr_t start = AlignedStart(page, align);
    return start <= end && end - start >= size;
  }

  PageAllocator alloc_;
  ArenaPageHeader* used_ = nullptr;  // pages in use, most recent first
  ArenaPageHeader* free_ = nullptr;  // recycled pages
};

/*! \brief Arena over malloc'ed pages. */
using Arena = GenericArena<SimplePageAllocator>;

}  // namespace support
}  // namespace tvm

#endif  // TVM_SUPPORT_ARENA_H_
