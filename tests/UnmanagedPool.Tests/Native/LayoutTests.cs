using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using UnmanagedPool.Native;

namespace UnmanagedPool.Tests.Native;

/// <summary>
/// Pins the layout of every <c>[StructLayout(LayoutKind.Explicit)]</c> struct. A new explicit struct, or a new
/// field in one, fails <see cref="Every_explicit_struct_and_every_field_has_a_row_in_the_layout_table"/> until it
/// gets its rows here.
/// </summary>
public sealed class LayoutTests
{
    /// <summary>Expected field offsets: (struct, field, offset).</summary>
    private static readonly (Type Type, string Field, int Offset)[] s_fields =
    [
        // struct netmem, 64-bit kernel layout, then the region bookkeeping.
        (typeof(NetMem), nameof(NetMem.Flags), 0),
        (typeof(NetMem), nameof(NetMem.PpMagic), 8),
        (typeof(NetMem), nameof(NetMem.Pp), 16),
        (typeof(NetMem), nameof(NetMem.PpMappingPad), 24),
        (typeof(NetMem), nameof(NetMem.DmaAddr), 32),
        (typeof(NetMem), nameof(NetMem.PpRefCount), 40),
        (typeof(NetMem), nameof(NetMem.MapCount), 48),
        (typeof(NetMem), nameof(NetMem.RefCount), 52),
        (typeof(NetMem), nameof(NetMem.Order), 56),
        (typeof(NetMem), nameof(NetMem.State), 57),
        (typeof(NetMem), nameof(NetMem.RegionShift), 58),
        (typeof(NetMem), nameof(NetMem.Nid), 59),
        (typeof(NetMem), nameof(NetMem.PageIndex), 60),
        (typeof(UnmanagedPool.Internal.PtrRing.Indexes), nameof(UnmanagedPool.Internal.PtrRing.Indexes.Head), 128),
        (typeof(UnmanagedPool.Internal.PtrRing.Indexes), nameof(UnmanagedPool.Internal.PtrRing.Indexes.Tail), 192),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.Data), 0),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.Len), 8),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.Headroom), 12),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.MetaSize), 16),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.FrameSize), 20),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.MemType), 24),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.Flags), 28),
        (typeof(UnmanagedPool.XdpFrameDescriptor), nameof(UnmanagedPool.XdpFrameDescriptor.State), 32),
        // The multi-buffer fragment list in the head buffer's tailroom (skb_shared_info's nr_frags, xdp_frags_size,
        // xdp_frags_truesize, frags[]).
        (typeof(UnmanagedPool.XdpSharedInfo), nameof(UnmanagedPool.XdpSharedInfo.NrFrags), 0),
        (typeof(UnmanagedPool.XdpSharedInfo), nameof(UnmanagedPool.XdpSharedInfo.XdpFragsSize), 4),
        (typeof(UnmanagedPool.XdpSharedInfo), nameof(UnmanagedPool.XdpSharedInfo.XdpFragsTruesize), 8),
        (typeof(UnmanagedPool.XdpSharedInfo), nameof(UnmanagedPool.XdpSharedInfo.Frag0), 16),
        // The consumer's per-call fields, a cache line of padding on each side.
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.CacheWord), 64),
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.PutCount), 72),
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.BlockedCount), 76),
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.CacheIn), 80),
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.CacheOut), 88),
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.Stats), 96),
        (typeof(PagePool.ConsumerHot), nameof(PagePool.ConsumerHot.Frag), 192),
    ];

    /// <summary>Expected sizes: (struct, size).</summary>
    private static readonly (Type Type, int Size)[] s_sizes =
    [
        (typeof(NetMem), 64),
        (typeof(UnmanagedPool.Internal.PtrRing.Indexes), 384),
        (typeof(UnmanagedPool.XdpFrameDescriptor), 40),
        (typeof(UnmanagedPool.XdpSharedInfo), 288),
        (typeof(PagePool.ConsumerHot), 320),
    ];

    /// <summary>The assemblies whose explicit structs must all be in the table.</summary>
    private static Assembly[] Assemblies =>
    [
        typeof(NetMem).Assembly,
        Assembly.Load("UnmanagedPool"),
    ];

    public static TheoryData<Type, string, int> FieldRows()
    {
        var data = new TheoryData<Type, string, int>();
        foreach (var (type, field, offset) in s_fields)
            data.Add(type, field, offset);
        return data;
    }

    public static TheoryData<Type, int> SizeRows()
    {
        var data = new TheoryData<Type, int>();
        foreach (var (type, size) in s_sizes)
            data.Add(type, size);
        return data;
    }

    [Theory]
    [MemberData(nameof(FieldRows))]
    public void Field_lies_at_its_pinned_offset(Type type, string field, int offset)
    {
        Assert.Equal(offset, (int)Marshal.OffsetOf(type, field));
        FieldInfo info = type.GetField(field, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)!;
        Assert.Equal(offset, info.GetCustomAttribute<FieldOffsetAttribute>()!.Value);
    }

    [Theory]
    [MemberData(nameof(SizeRows))]
    public void Struct_has_its_pinned_size(Type type, int size)
    {
        Assert.Equal(size, UnsafeSizeOf(type));
        Assert.Equal(size, Marshal.SizeOf(type));
    }

    [Fact]
    public void ConsumerHot_fields_do_not_overlap_and_leave_a_cache_line_free_on_each_side()
    {
        // The counters and the fragment state are sequential structs: growing either must move the next field
        // (and the size) rather than overlap it or eat into the trailing line of padding.
        Assert.Equal(96, Unsafe.SizeOf<UnmanagedPool.Internal.PoolCounters>());
        Assert.True(96 + Unsafe.SizeOf<UnmanagedPool.Internal.PoolCounters>() <= 192);
        Assert.True(192 + Unsafe.SizeOf<UnmanagedPool.Internal.FragCutter>() <= 320 - 64);
    }

    [Fact]
    public unsafe void NetMem_offsets_hold_in_memory_as_well_as_in_metadata()
    {
        NetMem m = default;
        byte* b = (byte*)&m;
        Assert.Equal(0, (int)((byte*)&m.Flags - b));
        Assert.Equal(8, (int)((byte*)&m.PpMagic - b));
        Assert.Equal(16, (int)((byte*)&m.Pp - b));
        Assert.Equal(24, (int)((byte*)&m.PpMappingPad - b));
        Assert.Equal(32, (int)((byte*)&m.DmaAddr - b));
        Assert.Equal(40, (int)((byte*)&m.PpRefCount - b));
        Assert.Equal(48, (int)((byte*)&m.MapCount - b));
        Assert.Equal(52, (int)((byte*)&m.RefCount - b));
        Assert.Equal(56, (int)(&m.Order - b));
        Assert.Equal(57, (int)(&m.State - b));
        Assert.Equal(58, (int)(&m.RegionShift - b));
        Assert.Equal(59, (int)((byte*)&m.Nid - b));
        Assert.Equal(60, (int)((byte*)&m.PageIndex - b));
        Assert.Equal(64, sizeof(NetMem));
        Assert.Equal(NetMem.Size, sizeof(NetMem));
    }

    [Fact]
    public void Every_explicit_struct_and_every_field_has_a_row_in_the_layout_table()
    {
        var missing = new List<string>();
        foreach (Type type in Assemblies.SelectMany(a => a.GetTypes()).Where(IsProjectExplicitStruct))
        {
            if (!s_sizes.Any(r => r.Type == type))
                missing.Add($"{type.FullName}: size");
            foreach (FieldInfo f in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
                if (!s_fields.Any(r => r.Type == type && r.Field == f.Name))
                    missing.Add($"{type.FullName}.{f.Name}");
        }
        Assert.True(missing.Count == 0, "No layout row for: " + string.Join(", ", missing));
    }

    [Fact]
    public void The_layout_table_names_only_fields_that_exist()
    {
        foreach (var (type, field, _) in s_fields)
        {
            Assert.True(type.IsExplicitLayout, $"{type.FullName} is not an explicit struct.");
            Assert.NotNull(type.GetField(field, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic));
        }
    }

    /// <summary>Explicit value types written in the project, not the compiler's fixed-size buffers and data blobs.</summary>
    private static bool IsProjectExplicitStruct(Type type)
    {
        if (!type.IsValueType || !type.IsExplicitLayout || type.IsEnum)
            return false;
        for (Type? t = type; t != null; t = t.DeclaringType)
            if (t.Name.Contains('<') || t.IsDefined(typeof(CompilerGeneratedAttribute), inherit: false))
                return false;
        return true;
    }

    private static int UnsafeSizeOf(Type type) =>
        (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(type).Invoke(null, null)!;
}
