using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using UnmanagedPool.Tests.Docs;

namespace UnmanagedPool.Tests.Packaging;

/// <summary>Runs alone: it builds with the dotnet CLI, which would otherwise share the two cores with every other test.</summary>
[CollectionDefinition(nameof(PackagingCollection), DisableParallelization = true)]
public sealed class PackagingCollection;

/// <summary>
/// The library as a user takes it: <c>dotnet pack</c> of the two libraries into a local folder, a new console
/// project that references the packages from that folder (no project reference, no InternalsVisibleTo), the
/// README's example as its <c>Program.cs</c>, built and run.
/// </summary>
[Collection(nameof(PackagingCollection))]
public sealed class PackageConsumerTests : IDisposable
{
    private static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(5);

    private readonly string _work = Path.Combine(Path.GetTempPath(), "unmanagedpool-package-" + Guid.NewGuid().ToString("N")[..12]);

    // A version no earlier run used, so the global package cache cannot hand back a stale package of the same
    // version; its folders are deleted from the cache again in Dispose.
    private readonly string _version = $"0.1.0-packagetest.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";

    public void Dispose()
    {
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } custom
            ? custom
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (string id in new[] { "unmanagedpool", "unmanagedpool.native" })
            TryDelete(Path.Combine(cache, id, _version));
        TryDelete(_work);
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private sealed record Run(int ExitCode, string Output);

    /// <summary>Runs <c>dotnet args</c> in <paramref name="directory"/> to completion (bounded), stdout and stderr together.</summary>
    private static Run Dotnet(string directory, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        // The test host runs under dotnet test: its MSBuild variables would point the child build at the wrong SDK
        // parts. The child gets a plain environment, and no build server outlives it.
        foreach (string key in psi.Environment.Keys.ToList())
        {
            if (key.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || key.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase) ||
                key.Equals("DOTNET_HOST_PATH", StringComparison.OrdinalIgnoreCase))
                psi.Environment.Remove(key);
        }
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

        var output = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(StepTimeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"dotnet {string.Join(' ', args)} ran past {StepTimeout}:\n{output}");
        }
        process.WaitForExit();
        lock (output)
            return new Run(process.ExitCode, output.ToString());
    }

    private static void Succeeds(Run run, string what) =>
        Assert.True(run.ExitCode == 0, $"{what} exited {run.ExitCode}:\n{run.Output}");

    [Fact]
    public void The_readme_example_builds_and_runs_against_the_packed_packages()
    {
        string root = Readme.RepoRoot();
        string feed = Path.Combine(_work, "feed");
        string artifacts = Path.Combine(_work, "artifacts");
        string app = Path.Combine(_work, "app");
        Directory.CreateDirectory(app);

        // Pack into a folder of this test's own; the build output goes under it too, so the repository's
        // bin/obj (and the assemblies this test host loaded from them) are never touched.
        foreach (string project in new[] { "src/Native/UnmanagedPool.Native.csproj", "src/Pool/UnmanagedPool.csproj" })
        {
            Succeeds(Dotnet(root, "pack", project, "-c", "Release", "-o", feed, "--artifacts-path", artifacts,
                "-p:Version=" + _version, "--disable-build-servers", "-nodeReuse:false"), "dotnet pack " + project);
        }
        foreach (string id in new[] { "UnmanagedPool", "UnmanagedPool.Native" })
        {
            Assert.True(File.Exists(Path.Combine(feed, $"{id}.{_version}.nupkg")), $"{id}.{_version}.nupkg was not packed");
            Assert.True(File.Exists(Path.Combine(feed, $"{id}.{_version}.snupkg")), $"{id}.{_version}.snupkg was not packed");
        }
        using (ZipArchive nupkg = ZipFile.OpenRead(Path.Combine(feed, $"UnmanagedPool.{_version}.nupkg")))
        {
            var entries = nupkg.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("lib/net10.0/UnmanagedPool.dll", entries);
            Assert.Contains("lib/net10.0/UnmanagedPool.xml", entries);
            Assert.Contains("PACKAGE.md", entries);
            Assert.DoesNotContain("README.md", entries);
        }

        // A console project as a user writes it: the packages by id and version from the local folder (added to
        // the machine's own package sources by a nuget.config), no unsafe code, the README block as Program.cs.
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="unmanagedpool-local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>disable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="UnmanagedPool" Version="{_version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), Readme.PackageExample());

        Succeeds(Dotnet(app, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false"), "dotnet build of the consumer");
        string bin = Path.Combine(app, "bin", "Release", "net10.0");
        Assert.True(File.Exists(Path.Combine(bin, "UnmanagedPool.dll")), "UnmanagedPool.dll did not come from the package");
        Assert.True(File.Exists(Path.Combine(bin, "UnmanagedPool.Native.dll")), "UnmanagedPool.Native.dll did not come with it as a dependency");

        Run run = Dotnet(app, Path.Combine(bin, "Consumer.dll"));
        Succeeds(run, "the consumer");
        Assert.Equal("fast 1 slow 1 cached 1 ring 1 inflight 64", run.Output.Trim());
    }
}
